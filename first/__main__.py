from common.server import serve
from first.app import DEFAULT_PORT, create_app

serve(create_app(), DEFAULT_PORT)
