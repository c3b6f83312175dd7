"""Why the naive method fails: the moving target, measured."""
