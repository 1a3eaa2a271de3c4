"""The Spark engine: the same features and the same tests on PySpark DataFrames, for when one
machine is outgrown (``pytest-llmops drift --engine spark``).

Spark reduces each side to what the tests need (value counts of numbers, with latency binned
to 0.1 % wide logarithmic bins; counts of categories and errors; sums of n-gram profiles; a
bounded sample of texts; per-prompt sums when paired), and the driver runs the shared tests
(``summaries.py``) on that. pyspark is imported only here, never at plugin load.
"""
