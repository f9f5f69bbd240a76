"""Rewrite every Colab badge link and every `pip install git+...` line from the repository URL.

The URL lives in one place, ``[project.urls] Repository`` in pyproject.toml (a GitHub repository;
notebooks are opened from its ``main`` branch). Run after changing it:

    python tools/update_links.py          # rewrite notebooks, exercises, solutions and README
    python tools/update_links.py --check  # exit 1 if any link differs from the configured URL
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "main"
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/")
GIT_INSTALL = re.compile(r"git\+https://github\.com/[\w.-]+/[\w.-]+?(?:\.git)?(?=[\"'\s@#]|$)")


def repository_url() -> str:
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", url)
    if not match:
        raise SystemExit(f"pyproject.toml's Repository URL must be https://github.com/OWNER/REPO, got {url!r}")
    return f"https://github.com/{match.group(1)}/{match.group(2)}"


def colab_prefix(url: str) -> str:
    return url.replace("https://github.com/", "https://colab.research.google.com/github/") + f"/blob/{BRANCH}/"


def files() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "INSTRUCTORS.md"]
    for folder in ("notebooks", "exercises", "solutions"):
        found += sorted((ROOT / folder).glob("*.ipynb")) + sorted((ROOT / folder).glob("*.py"))
    return [p for p in found if p.exists()]


def rewrite(text: str, url: str) -> str:
    text = COLAB.sub(colab_prefix(url), text)
    return GIT_INSTALL.sub(f"git+{url}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    url = repository_url()
    stale = []
    for path in files():
        text = path.read_text()
        new = rewrite(text, url)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    for path in stale:
        print(("differs: " if args.check else "rewrote: ") + str(path.relative_to(ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
