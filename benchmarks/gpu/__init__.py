"""The GPU session: `run.sh` prepares the machine, `driver.py` runs the phases under one deadline."""
