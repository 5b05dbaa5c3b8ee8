"""Prepare ansible-test to run on this collection, offline and from a fresh clone.

1. ansible-test refuses a symlinked collection, so copy the files git knows (tracked, and
   untracked but not ignored) into BUILD/ansible_collections/virtnet/podnet, deleting
   whatever is stale there. Prints that directory.
2. ansible-test fetches a pip bootstrap script from the internet for each sanity venv;
   put tools/get_pip_standin.py where it looks for a cached copy.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_test

REPO = Path(__file__).resolve().parent.parent


def install_pip_standin() -> None:
    requirements = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    versions = set(re.findall(r"pip='([0-9.]+)'", requirements.read_text()))
    if not versions:
        sys.exit(f"cannot find the pip version ansible-test bootstraps in {requirements}")
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in versions:
        shutil.copyfile(REPO / "tools" / "get_pip_standin.py", cache / f"get_pip_{version.replace('.', '_')}.py")


def sync_collection(build: Path) -> Path:
    target = build / "ansible_collections" / "virtnet" / "podnet"
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    wanted = {name for name in listed if name and (REPO / name).is_file()}
    for existing in [p for p in target.rglob("*") if p.is_file() or p.is_symlink()] if target.exists() else []:
        relative = existing.relative_to(target).as_posix()
        if relative not in wanted and not relative.startswith(("tests/output/", ".git/")):
            existing.unlink()
    for name in wanted:
        source, dest = REPO / name, target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.stat().st_mtime_ns != source.stat().st_mtime_ns or dest.stat().st_size != source.stat().st_size:
            shutil.copy2(source, dest)
    # ansible-test lints what git shows it; a repository here keeps tests/output/ out of sight.
    if not (target / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run(["git", "add", "-A"], cwd=target, check=True)
    return target


if __name__ == "__main__":
    install_pip_standin()
    print(sync_collection(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / ".build" / "ansible-test"))
