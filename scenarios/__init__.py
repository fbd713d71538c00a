"""What-if scenarios for grid planners: from one file to a sweep on a cluster.

Entry points
------------
``load_scenario(path, overrides)`` (:mod:`scenarios.schema`)
    Read and validate a scenario YAML file.
``run_scenario(scenario, out_dir)`` (:mod:`scenarios.runner`)
    Simulate it and write ``results.zarr``, ``kpis.json``, ``events.csv``,
    the resolved ``scenario.yaml`` and ``run.json``.
``compute_kpis`` / ``StepTracker`` (:mod:`twin.kpis`)
    The KPIs of a run; ``twin.kpis`` holds the one definition of energy, money,
    CO2 and peak that the live service, the analytics and the twin share.
``compare_runs`` (:mod:`scenarios.compare`), ``run_sweep`` (:mod:`scenarios.sweep`)
    Side-by-side KPIs, plots and report; parameter sweeps on Dask.

See ``docs/scenarios.md``.
"""
