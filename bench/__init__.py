"""chatd's overhead benchmark (DESIGN §8): mock upstream, bare floor, load generator, report.

    python -m bench.run [--quick]       # direct, floor and chatd in one run; the table
    python -m bench.scaling [--quick]   # 1, 100 and 1,000 open streams through chatd
"""
