"""``python -m benchmarks.study ...``: the study's command line (:func:`benchmarks.study.runner.main`)."""

from benchmarks.study.runner import main

main()
