"""`python -m keras_recu.deploy JOB`: the conversion process that `convert_saved` starts."""

import sys

from keras_recu.deploy.saved import main

sys.exit(main())
