"""The page people use to try the service: static HTML, CSS and JavaScript, and the route that serves
them. It talks to the API only through its public endpoints, like any other client."""
