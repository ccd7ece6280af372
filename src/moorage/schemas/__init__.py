"""marshmallow schemas: requests are loaded strictly, engine payloads dumped into moorage's own shape."""
