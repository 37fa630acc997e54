"""The library core of the platform, with no Django: record types of every dataset kind, readers of
every import format on one streaming layer, writers of the export formats, statistics and step rules.

The apps (annotate, synth, judges, training) and ``training/ml`` import it; it imports none of them.
"""
