"""WordNet 3.0 for NLTK's METEOR, built offline from Debian's packages.

METEOR (Banerjee & Lavie, 2005), as NLTK implements it and as the MolT5 caption protocol
(Edwards et al., EMNLP 2022) uses it, matches synonyms through WordNet 3.0. ``nltk.download``
cannot reach the internet here, but Debian's ``wordnet-base`` and ``wordnet-sense-index``
packages ship the same Princeton database under ``/usr/share/wordnet``. This module copies
those files into an ``nltk_data/corpora/wordnet`` folder (real copies: NLTK refuses symlinks),
writes the ``lexnames`` file that Debian does not ship (the 45 lexicographer files of
WordNet 3.0, see ``man 5 lexnames``), and puts the folder on ``nltk.data.path``.

Run ``python -m hsanet.metrics.wordnet [--quiet]`` to build and check it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

DEBIAN_WORDNET = Path("/usr/share/wordnet")

#: The files NLTK's ``WordNetCorpusReader`` opens (its ``_FILES``), minus ``lexnames``.
WORDNET_FILES = (
    "cntlist.rev",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

#: WordNet 3.0 lexicographer files: (name, syntactic category 1=noun 2=verb 3=adj 4=adv).
LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1),
    ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1),
    ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1),
    ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2),
    ("verb.competition", 2), ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2),
    ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2), ("verb.possession", 2),
    ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2), ("adj.ppl", 3),
)

FIX_HINT = (
    "install Debian's WordNet 3.0 with `apt-get install wordnet-base wordnet-sense-index` "
    "(or run `./run setup`), then retry"
)


def nltk_data_dir() -> Path:
    """Folder that receives ``corpora/wordnet``: ``$HSANET_NLTK_DATA`` or ``~/.cache/hsanet/nltk_data``."""
    env = os.environ.get("HSANET_NLTK_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cache" / "hsanet" / "nltk_data").resolve()


def lexnames_text() -> str:
    """The ``lexnames`` file: one ``NN<TAB>name<TAB>category`` line per lexicographer file."""
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))


def _is_complete(target: Path) -> bool:
    return all((target / f).is_file() for f in WORDNET_FILES + ("lexnames",))


def build_wordnet(root: Path, source: Path | None = None) -> Path:
    """Copy the Debian WordNet files into ``root/corpora/wordnet`` (once) and return that folder.

    ``source`` defaults to :data:`DEBIAN_WORDNET` (``/usr/share/wordnet``).

    Raises
    ------
    RuntimeError
        When ``source`` lacks any of the needed files; the message names the fix.
    """
    source = Path(source) if source is not None else DEBIAN_WORDNET
    target = Path(root) / "corpora" / "wordnet"
    if _is_complete(target):
        return target
    missing = [f for f in WORDNET_FILES if not (source / f).is_file()]
    if missing:
        raise RuntimeError(
            f"WordNet 3.0 files missing from {source} ({', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}): {FIX_HINT}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # build in a private folder, then rename: a concurrent build never sees half a corpus
    staging = Path(tempfile.mkdtemp(prefix="wordnet.partial.", dir=target.parent))
    try:
        for name in WORDNET_FILES:
            shutil.copyfile(source / name, staging / name)  # copies: NLTK refuses symlinks
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if not _is_complete(target):  # another process won the race: fine if complete
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_wordnet(quiet: bool = False) -> Path:
    """Make ``nltk.corpus.wordnet`` usable offline and return the nltk_data folder.

    Builds the corpus into :func:`nltk_data_dir` on first use, appends that folder to
    ``nltk.data.path`` and checks that ``wordnet.synsets("dog")`` answers.

    Raises
    ------
    RuntimeError
        When Debian's WordNet files are missing or NLTK cannot read the built corpus.
    """
    import nltk

    root = nltk_data_dir()
    build_wordnet(root)
    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))
    try:
        from nltk.corpus import wordnet

        ok = bool(wordnet.synsets("dog"))
    except (LookupError, OSError, AssertionError, ValueError, PermissionError) as exc:
        raise RuntimeError(f"NLTK cannot read WordNet from {root}: {exc}; {FIX_HINT}.") from exc
    if not ok:
        raise RuntimeError(f"WordNet in {root} returned no synsets for 'dog'; {FIX_HINT}.")
    if not quiet:
        print(f"WordNet 3.0 ready for NLTK in {root}")
    return root


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m hsanet.metrics.wordnet [--quiet]``; exit 0 when WordNet works, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    try:
        ensure_wordnet(quiet=args.quiet)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
