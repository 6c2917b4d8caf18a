"""Molecule drawings: RDKit's rdMolDraw2D SVG with atom highlights and atom notes.

Rendering only: the fragment ids, scan order and per-atom changes come from the Trace. The atoms
are drawn from the trace's canonical SMILES, whose atom order is the order of the Trace's per-atom
fields (hsanet.featurizers.parse rebuilds every molecule from its canonical SMILES).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from plotly.colors import hex_to_rgb, qualitative, sample_colorscale, unlabel_rgb
from rdkit import Chem, rdBase
from rdkit.Chem.Draw import rdMolDraw2D

Colour = tuple[float, float, float]
FRAGMENT_PALETTE = qualitative.Pastel + qualitative.Set3
CHANGE_SCALE = "YlOrRd"


def molecule(smiles: str) -> Chem.Mol | None:
    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(smiles)


def _rgb(colour: str) -> Colour:
    r, g, b = hex_to_rgb(colour) if colour.startswith("#") else unlabel_rgb(colour)
    return (r / 255.0, g / 255.0, b / 255.0)


def fragment_colours(atom_fragment: Sequence[int]) -> dict[int, Colour]:
    """Atom index -> colour of its fragment id."""
    return {i: _rgb(FRAGMENT_PALETTE[int(f) % len(FRAGMENT_PALETTE)]) for i, f in enumerate(atom_fragment)}


def fragment_hex(fragment: int) -> str:
    c = FRAGMENT_PALETTE[int(fragment) % len(FRAGMENT_PALETTE)]
    return c if c.startswith("#") else "#%02x%02x%02x" % tuple(int(v) for v in unlabel_rgb(c))


def value_range(values: Sequence[float]) -> tuple[float, float]:
    """(smallest, largest): the ends of the one colour scale the drawing and its bar chart share."""
    vals = [float(v) for v in values]
    return (min(vals), max(vals)) if vals else (0.0, 0.0)


def value_colours(values: Sequence[float]) -> dict[int, Colour]:
    """Atom index -> colour on a sequential scale from the smallest value (palest) to the largest
    (darkest): the same mapping as a plotly bar chart with ``cmin, cmax = value_range(values)``."""
    vals = [float(v) for v in values]
    lo, hi = value_range(vals)
    scaled = [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in vals]
    return {i: _rgb(c) for i, c in enumerate(sample_colorscale(CHANGE_SCALE, scaled))} if vals else {}


def svg(smiles: str, atom_colours: Mapping[int, Colour] | None = None,
        notes: Mapping[int, str] | None = None, width: int = 460, height: int = 340,
        colour_bonds_within: Sequence[int] | None = None) -> str | None:
    """An SVG drawing of ``smiles``.

    Parameters
    ----------
    atom_colours
        Highlight colour per atom index.
    notes
        A short label per atom index (drawn beside the atom), e.g. its scan position.
    colour_bonds_within
        A group id per atom: bonds whose two atoms share a group get the atoms' colour (fragments).
    """
    mol = molecule(smiles)
    if mol is None:
        return None
    mol = Chem.Mol(mol)
    for idx, text in (notes or {}).items():
        if idx < mol.GetNumAtoms():
            mol.GetAtomWithIdx(int(idx)).SetProp("atomNote", str(text))
    atoms, bonds, bond_colours = [], [], {}
    colours = {int(i): c for i, c in (atom_colours or {}).items() if i < mol.GetNumAtoms()}
    atoms = sorted(colours)
    if colour_bonds_within is not None and colours:
        for bond in mol.GetBonds():
            a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            if a in colours and colour_bonds_within[a] == colour_bonds_within[b]:
                bonds.append(bond.GetIdx())
                bond_colours[bond.GetIdx()] = colours[a]
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    opts = drawer.drawOptions()
    opts.annotationFontScale = 0.7
    opts.clearBackground = False
    opts.padding = 0.08
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol, highlightAtoms=atoms, highlightAtomColors=colours,
                                       highlightBonds=bonds, highlightBondColors=bond_colours)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def png(smiles: str, width: int = 200, height: int = 150) -> bytes | None:
    """A small PNG drawing of ``smiles`` (the map's hover pictures), or None when it does not parse."""
    mol = molecule(smiles)
    if mol is None:
        return None
    drawer = rdMolDraw2D.MolDraw2DCairo(width, height)
    drawer.drawOptions().padding = 0.06
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
