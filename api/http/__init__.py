"""The HTTP face of the service: routes, request dependencies, errors, middleware, GraphQL and
the dashboard's static files. Handlers validate, call one part of the live runtime, serialize."""
