"""The defaults of ``suggest segments``, one place for the command's options and the library's arguments.

Kept apart from the fitting so that building the CLI's parser imports no model library.
"""

MAX_K = 10        # most groups to try
DEPTH = 4         # depth of the rules' decision tree
MIN_SHARE = 0.05  # smallest segment worth a different experience, as a share of the visitors
