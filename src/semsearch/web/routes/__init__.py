"""The API's routes, one module per resource, each an APIRouter that app.create_app mounts.
A route parses, calls one library function, and lets the error handlers turn domain errors
into a status."""
