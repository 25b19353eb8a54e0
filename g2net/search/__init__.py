"""Searching continuous strain: strain and trigger files, time slides, the engine, its statistics, the evaluation."""
