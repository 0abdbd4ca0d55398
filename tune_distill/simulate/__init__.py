"""Simulated training for planning sweeps: learning curves and step times for settings no one trained.

`surrogate.py` fits learning curves recorded by real sweeps (curves.jsonl + trials.jsonl + sweep.json) and
gives, for a trial's resolved settings, the evaluations a real run would report, with each evaluation's
measured noise; `timing.py` gives how long its optimiser steps and evaluations would take on a measured
device. The sweep's simulated trainable (sweep/simulated.py) uses both: the real driver, searcher, scheduler,
records and storage then run a 480-trial sweep on one machine.

Must not know: Ray, searchers, schedulers, how the curves were recorded beyond their files.
"""
