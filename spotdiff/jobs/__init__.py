"""What the gateway, the workers and the reconciler share about jobs: deadlines, pair progress, admission."""
