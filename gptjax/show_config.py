"""See configs before running them.

    gptjax config show --config gpt2_small --config.train.steps=40     # the resolved config, as YAML
    gptjax config keys [SECTION]                                      # every key: default, choices, meaning
    gptjax config list                                                # the shipped configs, by name

`show` prints exactly what a run would save as RUN/config.yaml (so `--config` of the printed file repeats it);
`python -m gptjax.train ... --print_config` does the same from the train command line. The meaning of each key is
the comment beside it in gptjax.config.base_config, the one place defaults are written.
"""

from __future__ import annotations

import inspect
import re
import sys

from gptjax.command import ArgumentParser, parse_args
from gptjax.config import CHOICES, ConfigError, base_config, find_config, load_config, shipped_configs, to_yaml
from gptjax.errors import report_errors

_SECTION = re.compile(r"^    c\.(\w+) = dict\($")
_KEY = re.compile(r"^        (\w+)=.*?(?:#\s*(.*))?$")
_COMMENT = re.compile(r"^\s*#\s*(.*)$")


def key_help() -> dict[str, str]:
    """'section.key' -> the comment written beside (or just above) it in base_config."""
    meanings, section, above = {}, None, []
    for line in inspect.getsource(base_config).splitlines():
        if match := _SECTION.match(line):
            section, above = match.group(1), []
        elif line.strip() == ")":
            section = None
        elif section and (match := _COMMENT.match(line)):
            above.append(match.group(1))
        elif section and (match := _KEY.match(line)):
            meanings[f"{section}.{match.group(1)}"] = " ".join([*above, match.group(2) or ""]).strip()
            above = []
    return meanings


def describe_keys(section: str | None = None) -> str:
    cfg, meanings = base_config().to_dict(), key_help()
    if section is not None and section not in cfg:
        raise ConfigError(f"no config section {section!r}; sections: {', '.join(cfg)}")
    lines = []
    for name, values in cfg.items():
        if section not in (None, name):
            continue
        lines.append(f"{name}:")
        for key, default in values.items():
            choices = CHOICES.get(f"{name}.{key}")
            about = meanings.get(f"{name}.{key}", "")
            extra = f" [{' | '.join(choices)}]" if choices else ""
            lines.append(f"  {key} = {default!r}{extra}" + (f"  -- {about}" if about else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    what, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("", argv)
    if what not in ("show", "keys", "list"):
        if what:
            print(f"gptjax config: error: unknown action {what!r}; choose show, keys or list", file=sys.stderr)
            return 2
        print(__doc__.strip())
        return 0

    def work() -> None:
        if what == "list":
            print("\n".join(shipped_configs()))
        elif what == "keys":
            parser = ArgumentParser(prog="gptjax config keys")
            parser.add_argument("section", nargs="?", help="one section (model, data, optim, train, ...)")
            print(describe_keys(parser.parse_args(rest).section))
        else:
            args, overrides = parse_args(rest, prog="gptjax config show", doc=__doc__)
            print(f"# {find_config(args.config) if args.config else 'the built-in job'}"
                  + "".join(f" --config.{o}" for o in overrides))
            print(to_yaml(load_config(args.config, overrides)), end="")

    return report_errors(work)


if __name__ == "__main__":
    sys.exit(main())
