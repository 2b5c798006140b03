"""Build hook: compiles the importers' native line scanner (src/agenttrail/importers/_scan.c).

It is an accelerator, not a requirement: where no C compiler or no Python headers are found the build
goes on without it, and the importers read every line in Python (the same results, slower). The module
is built next to its source, so an editable install (`pip install -e .`) imports it from the work tree;
a wheel carries it as a platform wheel. After editing _scan.c, run `pip install -e .` again.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script (below), outside a build
    BuildHookInterface = object

SOURCE = Path("src/agenttrail/importers/_scan.c")


def compile_scanner(root: Path) -> Path | None:
    """Compile `_scan.c` into `_scan<EXT_SUFFIX>` beside it; None (and a note) when it cannot be."""
    src = root / SOURCE
    out = src.with_name("_scan" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    # libcrypto (OpenSSL, which Python's hashlib uses too) hashes the call ids; its headers: libssl-dev.
    cmd = [*cc, "-O2", "-shared", "-fPIC", "-pthread", f"-I{include}", str(src), "-o", str(out), "-lcrypto"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"agenttrail: native line scanner not built ({e}); the importers read in Python", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(
            f"agenttrail: native line scanner not built; the importers read in Python:\n{proc.stderr[-2000:]}",
            file=sys.stderr,
        )
        return None
    return out


class NativeScannerHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # the sdist ships the C source; its wheel compiles it
        out = compile_scanner(Path(self.root))
        if out is None or version == "editable":
            return  # an editable install imports the module from src/
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"][str(out)] = f"agenttrail/importers/{out.name}"


if __name__ == "__main__":  # compile in place without reinstalling: python3 hatch_build.py
    built = compile_scanner(Path(__file__).resolve().parent)
    print(built or "not built")
