"""Molecule input: SMILES or MOL block in, a canonical RDKit molecule out.

The Ketcher editor returns Kekulé SMILES or a MOL block, people paste anything: everything is
canonicalized with RDKit here, and every problem becomes a :class:`MoleculeError` whose message a
person can act on (what RDKit objected to, which limit was exceeded).
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field

from rdkit import Chem, RDLogger, rdBase

MAX_INPUT_CHARS = 100_000
DEFAULT_MAX_ATOMS = 200
_TIMESTAMP = re.compile(r"^\[?\d\d:\d\d:\d\d\]?\s*")
# Atom tokens of a SMILES string: bracket atoms, the organic subset (aromatic lower case) and '*'.
# Counted before RDKit sees the text: RDKit's parser is far from linear on some inputs (96,000
# characters of fused benzene rings take minutes), so oversized molecules are refused up front.
_SMILES_ATOM = re.compile(r"\[([^\[\]]*)\]|Br|Cl|[BCNOPSFI]|[bcnops]|\*")
_BRACKET_ELEMENT = re.compile(r"\d*([A-Z][a-z]?|[a-z][a-z]?|\*|#\d+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ATOMS_PER_HEAVY_ATOM = 10   # all atoms (explicit H, '*') may be at most this many times max_atoms


class MoleculeError(ValueError):
    """The input is not a molecule HSA-Net can analyze; the message says why."""


@dataclass
class Molecule:
    """A parsed molecule. ``mol`` is rebuilt from the canonical SMILES, so atom order is canonical."""

    smiles: str
    mol: Chem.Mol
    num_atoms: int
    num_fragments: int
    input: str
    input_format: str            # "smiles" or "molblock"
    warnings: list[str] = field(default_factory=list)


# --- RDKit's messages -------------------------------------------------------------------------
# RDKit reports parse errors through its logger, not through exceptions; route them to Python
# logging and keep the last ones per thread so the error message can quote them.
class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        msgs = getattr(self.local, "msgs", None)
        if msgs is not None:
            msgs.append(record.getMessage().strip())


_collector = _Collector()
_setup_lock = threading.Lock()
_is_setup = False


def smiles_problem(smiles: str) -> str | None:
    """Why a SMILES string is unusable as a dataset row, or ``None`` when RDKit parses it to a molecule
    with atoms (the one check the ChEBI-20, MoleculeNet and table readers share; RDKit's log is muted)."""
    if not smiles:
        return "empty SMILES"
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return "RDKit cannot parse the SMILES"
    return None


def _setup_logging() -> None:
    global _is_setup
    with _setup_lock:
        if _is_setup:
            return
        rdBase.LogToPythonLogger()
        logger = logging.getLogger("rdkit")
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.addHandler(_collector)
        logger.propagate = False
        RDLogger.EnableLog("rdApp.error")
        RDLogger.EnableLog("rdApp.warning")
        _is_setup = True


def _rdkit_says(msgs: list[str]) -> str:
    lines = []
    for m in msgs:
        m = _TIMESTAMP.sub("", m).strip()
        if m and m not in lines:
            lines.append(m)
    useful = [ln for ln in lines if "SMILES Parse Error" in ln or "Explicit valence" in ln
              or "kekulize" in ln.lower() or "Error" in ln or "valence" in ln.lower()]
    text = "; ".join((useful or lines)[:2])
    return _ECHO.sub(lambda m: m.group(1) + _short(m.group(2)), text)[:300]


_ECHO = re.compile(r"(while parsing: |for input: ')([^;']*)")       # RDKit echoes the whole input
_ATOMS = re.compile(r"Unkekulized atoms: ([\d ]+)")
_VALENCE = re.compile(r"[Ee]xplicit valence for atom # ?(\d+) (\w+),? (\d+)")


def _short(text: str, keep: int = 60) -> str:
    return text if len(text) <= keep else f"{text[:keep]}… ({len(text):,} characters)"


def _atom_list(numbers: list[int]) -> str:
    if len(numbers) > 1 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"atoms {numbers[0]}-{numbers[-1]}"
    return ("atom " if len(numbers) == 1 else "atoms ") + ", ".join(map(str, numbers[:12])) + (
        "…" if len(numbers) > 12 else "")


def plain_words(why: str) -> str:
    """What RDKit's message means, in words a student understands (RDKit's own text follows it)."""
    low = why.lower()
    m = _ATOMS.search(why)
    if "kekulize" in low:
        where = f" at {_atom_list([int(x) for x in m.group(1).split()])}" if m else ""
        return (f"the ring bonds could not be given alternating single and double bonds (aromaticity){where}: "
                "check the lower-case aromatic atoms and their hydrogens, e.g. [nH]")
    m = _VALENCE.search(why)
    if m:
        return (f"atom {m.group(1)} ({m.group(2)}) has {m.group(3)} bonds, more than this element allows: check "
                "its bonds, charge and hydrogens")
    if "valence" in low:
        return "an atom has more bonds than its element allows: check bonds, charges and hydrogens"
    if "marked aromatic" in low:
        return "an atom outside any ring is written aromatic (lower case): write it in capitals, e.g. N not n"
    if "unclosed ring" in low:
        return "a ring is opened but not closed: a ring-closure digit is missing its partner"
    if "parentheses" in low:
        return "the parentheses of the branches do not match"
    if "syntax error" in low or "parse error" in low:
        return "this is not valid SMILES: a character, bracket or bond symbol is out of place"
    return "RDKit could not build a molecule from it"


def _count_smiles_atoms(smiles: str) -> tuple[int, int]:
    """(heavy atoms, all atoms) written in ``smiles``, counted from the text alone."""
    heavy = total = 0
    for m in _SMILES_ATOM.finditer(smiles):
        total += 1
        if m.group(0) == "*":
            continue
        inner = m.group(1)
        if inner is None:
            heavy += 1
            continue
        el = _BRACKET_ELEMENT.match(inner)
        if el is None or el.group(1) not in ("H", "*", "#1", "#0"):
            heavy += 1
    return heavy, total


def _check_size(n_heavy: int, n_total: int, max_atoms: int) -> None:
    if n_heavy > max_atoms:
        raise MoleculeError(f"the molecule has {n_heavy} heavy atoms; the limit is {max_atoms}")
    if n_total > MAX_ATOMS_PER_HEAVY_ATOM * max_atoms:
        raise MoleculeError(f"the input has {n_total} atoms (explicit hydrogens included); the limit is "
                            f"{MAX_ATOMS_PER_HEAVY_ATOM * max_atoms}")


def _looks_like_molblock(text: str) -> bool:
    return "M  END" in text or "V2000" in text or "V3000" in text


def parse(text: str, max_atoms: int = DEFAULT_MAX_ATOMS) -> Molecule:
    """Parse a SMILES string or a MOL block into a canonical :class:`Molecule`.

    Raises
    ------
    MoleculeError
        empty input, too long, NUL bytes, reaction SMILES, unparsable SMILES or MOL block (with
        RDKit's reason), no heavy atoms, or more heavy atoms than ``max_atoms``.
    """
    if text is None or not isinstance(text, str):
        raise MoleculeError("no molecule given: enter a SMILES string or draw a molecule")
    if len(text) > MAX_INPUT_CHARS:
        raise MoleculeError(f"input is {len(text):,} characters long; the limit is {MAX_INPUT_CHARS:,}")
    if "\x00" in text:
        raise MoleculeError("input contains a NUL byte; paste plain SMILES text")
    is_block = _looks_like_molblock(text)
    ignored = ""
    stripped = text.strip()
    if not stripped:
        raise MoleculeError("empty input: enter a SMILES string or draw a molecule")
    if not is_block:
        if any(c.isspace() for c in stripped):
            # a SMILES may be followed by a name ("CCO ethanol"); keep only the first word
            stripped, rest = stripped.split(maxsplit=1)
            ignored = rest.strip()
        if ">" in stripped:
            raise MoleculeError("this looks like a reaction SMILES (it contains '>'); enter a single molecule")
        if not stripped.isascii():
            raise MoleculeError("SMILES may only contain ASCII characters")
        bad = _CONTROL.search(stripped)
        if bad is not None:
            raise MoleculeError(f"input contains a control character (U+{ord(bad.group()):04X}); "
                                "paste plain SMILES text")
        stripped = stripped.replace("\\\\", "\\")   # ChEBI-20 writes some directional bonds doubled

    _setup_logging()
    _collector.local.msgs = []
    try:
        if is_block:
            raw = Chem.MolFromMolBlock(text, sanitize=False, removeHs=False)   # fast: size check first
            if raw is not None:
                _check_size(raw.GetNumHeavyAtoms(), raw.GetNumAtoms(), max_atoms)
            mol = Chem.MolFromMolBlock(text, sanitize=True, removeHs=True)
            kind = "MOL block"
        else:
            _check_size(*_count_smiles_atoms(stripped), max_atoms)
            mol = Chem.MolFromSmiles(stripped)
            kind = "SMILES"
        msgs = list(_collector.local.msgs)
    finally:
        _collector.local.msgs = None
    if mol is None:
        why = _rdkit_says(msgs)
        raise MoleculeError(f"{plain_words(why)} (RDKit could not read this {kind}" + (f": {why})" if why else ")"))

    n_heavy = mol.GetNumHeavyAtoms()
    if n_heavy == 0:
        raise MoleculeError("the molecule has no heavy atoms")
    if n_heavy > max_atoms:
        raise MoleculeError(f"the molecule has {n_heavy} heavy atoms; the limit is {max_atoms}")

    mol = Chem.RemoveHs(mol)
    smiles = Chem.MolToSmiles(mol)
    canon = Chem.MolFromSmiles(smiles)
    if canon is None:   # round trip failed (rare; e.g. unusual aromaticity): keep the parsed graph
        canon = mol
    n_frag = len(Chem.GetMolFrags(canon))
    warnings = []
    if ignored:
        shown = ignored if len(ignored) <= 40 else ignored[:40] + "..."
        warnings.append(f"only the first word was read as SMILES; ignored the rest: {shown!r}")
    if n_frag > 1:
        warnings.append(f"{n_frag} disconnected fragments (salt or mixture): all are analyzed together")
    return Molecule(smiles=smiles, mol=canon, num_atoms=canon.GetNumAtoms(), num_fragments=n_frag,
                    input=text, input_format="molblock" if is_block else "smiles", warnings=warnings)
