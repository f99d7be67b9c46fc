from storelink.cli import app

app(prog_name="storelink")
