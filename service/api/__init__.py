"""HTTP layer: request/response schemas and one router per resource."""
