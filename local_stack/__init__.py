"""The local composition (``make run``, ``make demo``): Triton, the room server, the API and a
simulated robot on this machine. Outside ``orchestrator/`` on purpose: the production
package (and its session workers) never imports the local test tools (``arena_server``,
``sim_robot``)."""
