"""A command's stderr is its own: `keras-recu` as a user runs it, in the user's environment.

* `--help`, of the command and of each sub-command, loads neither Keras nor
  TensorFlow and prints nothing on stderr;
* a user error is one line on stderr, TensorFlow's start-up log kept off it,
  also where TensorFlow would print it whatever TF_CPP_MIN_LOG_LEVEL says;
* what TensorFlow printed is shown when it fails to load;
* `keras_recu.app.quiet_imports` captures descriptor 2 and leaves the
  command's own `sys.stderr` alone where asked.

The train -> evaluate -> convert chain's stderr (empty) is asserted in
tests/test_cli_subprocess.py, on the runs it makes anyway.
"""

import json
import sys
import time
from pathlib import Path

import pytest

from tests.run_utils import ROOT, cli, environment, last_json_line, one_line_error, python

#: The user's environment: nothing set to quiet TensorFlow.
USERS = environment(TF_CPP_MIN_LOG_LEVEL=None)
HELPS = [["--help"], ["train", "--help"], ["evaluate", "--help"], ["convert", "--help"], ["import-torch", "--help"]]
HEAVY = ("tensorflow", "keras", "jax", "torch")


@pytest.mark.parametrize("argv", HELPS, ids=lambda argv: " ".join(argv))
def test_help_imports_no_keras_nor_tensorflow_and_prints_nothing_on_stderr(argv):
    # -X importtime writes one "import time:" line per module on stderr, and nothing else may be there.
    result = python(["-X", "importtime", "-m", "keras_recu.app.cli", *argv], env=USERS, label="--help")
    assert result.returncode == 0 and "usage: keras-recu" in result.stdout, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert all(line.startswith("import time:") for line in lines), [line for line in lines if "import time:" not in line]
    imported = {line.split("|")[-1].strip() for line in lines[1:]}
    assert not {name for name in imported if name.split(".")[0] in HEAVY}, sorted(imported)[:20]


def test_help_of_the_console_script_is_quick_and_silent():
    """The installed `keras-recu` script (argv[0] keras-recu), where this environment has it; else `python -m`."""
    script = Path(sys.executable).with_name("keras-recu")
    args = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "keras_recu.app.cli", "--help"]
    import subprocess

    start = time.perf_counter()
    result = subprocess.run(args, env=USERS, capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - start
    assert result.returncode == 0 and result.stderr == "" and "train" in result.stdout, result.stderr[-3000:]
    print(f"\nHELP_SECONDS {seconds:.2f} ({args[0]})")


def test_a_flag_error_is_one_line_without_loading_keras():
    line = one_line_error(cli(["train", "--batch-size", "0"], env=USERS, label="flag error"))
    assert line == ("keras-recu train: error: argument --batch-size: expected a positive integer, got 0 "
                    "(see keras-recu train --help)")


@pytest.mark.tf_only
def test_an_error_after_tensorflow_loaded_is_one_line_whatever_its_log_level(tmp_path):
    missing = tmp_path / "missing.keras"
    # TensorFlow's log at its most talkative, as a user may have set it: still kept off stderr. (The
    # user's default environment is the train -> evaluate -> convert chain's, in test_cli_subprocess.py.)
    talkative = environment(TF_CPP_MIN_LOG_LEVEL="0", KERAS_BACKEND="tensorflow")
    quiet = cli(["evaluate", str(missing)], env=talkative, label="evaluate error")
    assert one_line_error(quiet) == f"keras-recu evaluate: no such file: {missing}"


#: A TensorFlow that writes on descriptor 2, as the C++ runtime does (with the log level it was given), then
#: fails to import.
BROKEN_TENSORFLOW = """
import os
level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.write(2, f"F0000 cpu_feature_guard.cc: this CPU lacks AVX (log level {level})\\n".encode())
raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
"""


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_what_tensorflow_printed_is_shown_when_it_fails_to_load(tmp_path, verbose):
    """Shown after the fact when quiet; as it comes with --verbose, which leaves TensorFlow's log level alone."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(BROKEN_TENSORFLOW)
    env = environment(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL=None)
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    result = cli([*(["--verbose"] if verbose else []), "evaluate", str(tmp_path / "run")], env=env,
                 label="broken TensorFlow")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0] == f"F0000 cpu_feature_guard.cc: this CPU lacks AVX (log level {None if verbose else 2})"
    assert lines[-1].startswith("keras-recu evaluate: cannot load Keras and its backend (")
    assert "cannot open shared object file" in lines[-1] and "KERAS_BACKEND" in lines[-1]


# Each case in a fresh interpreter of its own; RESULT lines on stdout, stderr as the terminal would get it.
CAPTURE = """
import os, subprocess, sys, json
sys.argv[0] = "keras-recu"  # as the command: the package leaves Keras unloaded
sys.path.insert(0, {root!r})
from keras_recu.app import quiet_imports

case = sys.argv[1]
if case == "imports":
    with quiet_imports.captured():
        os.write(2, b"I0000 native start-up line\\n")
        print("python warning of an import", file=sys.stderr)
    print("the command's line", file=sys.stderr)
elif case == "command":
    with quiet_imports.captured(python=False):
        os.write(2, b"W0000 native line at conversion\\n")
        print("the command's line", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import sys; print('a child', file=sys.stderr)"],
                       stderr=quiet_imports.user_stderr())
    os.write(2, b"after the block\\n")
elif case == "failure":
    try:
        with quiet_imports.captured():
            os.write(2, b"E0000 why it failed\\n")
            raise ImportError("no")
    except ImportError:
        print("the command's line", file=sys.stderr)
elif case == "verbose":
    with quiet_imports.captured(show=True):
        os.write(2, b"I0000 shown\\n")
elif case == "environment":
    quiet_imports.quiet_environment()
    print("RESULT " + json.dumps(os.environ.get("TF_CPP_MIN_LOG_LEVEL")))
"""


@pytest.mark.parametrize("case, stderr", [
    ("imports", "the command's line\n"),
    ("command", "the command's line\na child\nafter the block\n"),
    ("failure", "E0000 why it failed\nthe command's line\n"),
    ("verbose", "I0000 shown\n"),
])
def test_captured_keeps_native_lines_off_stderr_and_the_commands_own_on_it(case, stderr):
    result = python(["-c", CAPTURE.format(root=str(ROOT)), case], env=USERS, label="quiet_imports")
    assert result.returncode == 0 and result.stderr == stderr, result.stderr


def test_the_quiet_environment_leaves_the_users_setting():
    unset = python(["-c", CAPTURE.format(root=str(ROOT)), "environment"], env=USERS, label="quiet_imports")
    assert last_json_line(unset.stdout) == "2"
    users = python(["-c", CAPTURE.format(root=str(ROOT)), "environment"],
                   env=environment(TF_CPP_MIN_LOG_LEVEL="0"), label="quiet_imports")
    assert last_json_line(users.stdout) == "0"


def test_the_package_registers_the_core_on_import_but_not_for_the_command():
    """`import keras_recu` registers the core (a saved model loads); the command's package import loads no Keras."""
    check = "import sys, keras_recu; print('RESULT ' + __import__('json').dumps('keras' in sys.modules))"
    library = python(["-c", check], env=environment(KERAS_BACKEND="jax"), label="package import")
    assert last_json_line(library.stdout) is True, library.stderr[-3000:]
    command = python(["-c", "import sys; sys.argv[0] = 'keras-recu'\n" + check], env=USERS, label="package import")
    assert last_json_line(command.stdout) is False, command.stderr[-3000:]
