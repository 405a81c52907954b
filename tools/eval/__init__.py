"""Evaluation of the tiny models: a probe network trained on the procedural world, generation
metrics (prompt adherence, temporal consistency, drift, distribution distance, adherence after a
prompt switch) and the 99%-energy rank analysis of the attention operators. Entry point: run.py."""
