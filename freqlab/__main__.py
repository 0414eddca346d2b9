import sys

from freqlab.cli import main

sys.exit(main())
