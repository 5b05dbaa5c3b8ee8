"""Offline stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test downloads get-pip.py from a host this network cannot reach. This stand-in
gives the fresh virtual environment pip from Python's own ensurepip, then installs the
packages ansible-test asked for (e.g. ``pip==25.2``) from the package index.
"""

import subprocess
import sys

options = [arg for arg in sys.argv[1:] if arg.startswith("-") and arg not in ("--no-setuptools", "--no-wheel")]
packages = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], stdout=subprocess.DEVNULL)
if packages:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *options, *packages])
