"""The lessons' experiments: races, sessions, the failure lab, bloat, scaling, chaos, the demo."""
