import sys

from fakepop.cli import main

sys.exit(main())
