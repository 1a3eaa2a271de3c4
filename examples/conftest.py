# The base example (examples/base) is its own project, replayed by CI with the base install.
collect_ignore = ["base"]
