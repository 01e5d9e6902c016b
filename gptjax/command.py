"""What the config-driven command lines share: --config FILE, --workdir DIR and --config.SECTION.KEY=VALUE.

    args, cfg = parse_config_args(argv, prog="python -m gptjax.train", doc=__doc__)

The overrides are applied by gptjax.config.load_config, which knows every key's type and says which key is wrong.
(ml_collections' config_flags parses the same syntax, but through absl's global flags, which a notebook or a
second tool in one process would share, and it cannot read the YAML config a run saves.)
"""

from __future__ import annotations

import argparse
import sys

import ml_collections

from gptjax.config import load_config


# How the running command was started, when that was `gptjax SUBCOMMAND` (set by gptjax.cli): usage and errors
# then name it so, instead of the `python -m gptjax.X` spelling each tool defaults to.
invoked_as: str | None = None


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, where there is one worth saying and the help does not say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == [] or default == "" or default == argparse.SUPPRESS \
                or "default" in text:
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


class ArgumentParser(argparse.ArgumentParser):
    """Every gptjax tool's argument parser: its usage names the command as it was started, --help shows each
    option's default, and a --multi-word option takes both spellings (--max-new-tokens and --max_new_tokens; the
    first is the one shown); a wrong use is one line naming the problem, exit 2."""

    def __init__(self, *args, prog: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", _HelpWithDefaults)
        super().__init__(*args, prog=invoked_as or prog, **kwargs)

    def add_argument(self, *names, **kwargs):
        spellings = []
        for name in names:
            spellings.append(name)
            if name.startswith("--") and ("_" in name or "-" in name[2:]):
                other = "--" + (name[2:].replace("_", "-") if "_" in name else name[2:].replace("-", "_"))
                spellings.append(other)
        ordered = sorted(dict.fromkeys(spellings), key=lambda n: "_" in n)  # the hyphen form first
        if "dest" not in kwargs and ordered[0].startswith("--"):
            kwargs["dest"] = ordered[0][2:].replace("-", "_")
        return super().add_argument(*ordered, **kwargs)

    def error(self, message):  # bad input is one line, as everywhere in gptjax, not the usage block
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str] | None, prog: str, doc: str, *, add_arguments=None,
               workdir_help: str = "run directory (default: runs/<config name>)"
               ) -> tuple[argparse.Namespace, list[str]]:
    """--config FILE, --workdir DIR and any number of --config.SECTION.KEY=VALUE (or --config.SECTION.KEY VALUE),
    returned as (args, ['SECTION.KEY=VALUE', ...]); add_arguments(parser) adds a tool's own options."""
    parser = ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                     epilog="Any config key can be set with --config.SECTION.KEY=VALUE.")
    parser.add_argument("--config", help="a config file (.py with get_config(), or .yaml); default: the built-in job")
    parser.add_argument("--workdir", help=workdir_help)
    if add_arguments is not None:
        add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    overrides, i = [], 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognized argument {item!r}; config keys are set as --config.SECTION.KEY=VALUE")
        item = item[len("--config."):]
        if "=" not in item:  # --config.a.b VALUE
            if i + 1 >= len(rest):
                parser.error(f"--config.{item} needs a value")
            item, i = f"{item}={rest[i + 1]}", i + 1
        overrides.append(item)
        i += 1
    return args, overrides


def parse_config_args(argv: list[str] | None, prog: str, doc: str, *, base=None, check=None, **kwargs
                      ) -> tuple[argparse.Namespace, ml_collections.ConfigDict]:
    """parse_args, then the config it names with its overrides (ConfigError for a bad one). base/check: another
    tool's schema (gptjax.data.prepare's)."""
    args, overrides = parse_args(argv, prog, doc, **kwargs)
    return args, load_config(args.config, overrides, base=base, check=check)
