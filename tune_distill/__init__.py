"""tune_distill: find the best small SQuAD 2.0 question-answering model for a budget.

Stages, in the one direction data flows: config -> data -> teacher -> student -> distill ->
evaluate -> run (one distillation run) -> search / sweep -> report / export. Each module's
docstring says what it does, what it must not know, and a CPU-sized command that runs it.

Must not know: nothing is imported here, so importing the package stays cheap.

Example (CPU, instant):
    python -m tune_distill config --help-keys
"""

__version__ = "0.1.0"
