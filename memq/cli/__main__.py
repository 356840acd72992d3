from memq.cli import app

app()
