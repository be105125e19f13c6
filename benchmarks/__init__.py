"""Measurements that stand on the runtime: `tango-rt bench` (bench.py, child.py, report.py), the sampler-quality
study, the CPU UNet-step comparison, and the serving load tests. Recorded results live in results/."""
