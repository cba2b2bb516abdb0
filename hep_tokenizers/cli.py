"""`hep-tok` command line: a thin dispatcher; each sub-command lives in its own module.

Each target module exposes ``main(argv: list[str] | None) -> int`` with its own argparse
parser, so ``hep-tok SUB --help`` shows that command's options.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("hep_tokenizers.generate.cli", "generate events with Pythia 8 + FastJet + detector smearing"),
    "inspect": ("hep_tokenizers.io.inspect", "format, tree, object counts and token lengths of ROOT files"),
    "train-tokenizer": ("hep_tokenizers.training", "train a residual-VQ event tokenizer"),
    "study": ("hep_tokenizers.study", "train a matrix of tokenizer configs and compare codebook health"),
    "tokenize": ("hep_tokenizers.tokenize_files", "tokenize ROOT files into a HuggingFace dataset"),
    "evaluate": ("hep_tokenizers.evaluation.cli", "reconstruction, physics and codebook report"),
    "demo": ("hep_tokenizers.demo", "the whole chain on the embedded sample"),
}


def _usage() -> str:
    lines = ["usage: hep-tok COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `hep-tok COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"hep-tokenizers {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hep-tok: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
