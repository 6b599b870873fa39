"""How a benchmark starts another benchmark module as a process of its own.

Workers (`engines.py`), one ablation run per process (`ablation.py _one`)
and the GPU driver's phases all start `python -m benchmarks.<module>`: the
child finds this checkout's `keras_recu` and the benchmarks package through
the repository root, put first on its `PYTHONPATH`, whatever its working
directory.

>>> module_command("benchmarks.ablation", "budgets")[1:]
['-m', 'benchmarks.ablation', 'budgets']
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

#: The repository root: the folder that holds `benchmarks/` and `keras_recu/`.
ROOT = Path(__file__).resolve().parents[1]


def python_command(script: Any, *args: Any) -> List[str]:
    """`[sys.executable, script, *args]` with every argument as a string."""
    return [sys.executable, str(script), *(str(a) for a in args)]


def module_command(module: str, *args: Any) -> List[str]:
    """The command line that runs `module` (`benchmarks.<name>`) with `args` in this Python."""
    return python_command("-m", module, *args)


def module_env(base: Optional[Mapping[str, str]] = None, **overrides: str) -> Dict[str, str]:
    """`base` (default: this process's environment) with the repository root first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env
