from broker.app import DEFAULT_PORT, create_app
from common.server import serve

serve(create_app(), DEFAULT_PORT)
