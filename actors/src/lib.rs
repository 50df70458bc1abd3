//! switchboard-actors: the long-lived actors (calls, registrar, queues, agents; coming with
//! the calls issue) and the HTTP side of the engine: health, metrics, later the API.

pub mod http;
