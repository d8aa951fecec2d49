//! The Kafka service end to end, against librdkafka's mock cluster: the outputs equal a
//! `replay` of the same records, with and without faults, across kills and restarts.

mod clock;
mod faults;
mod harness;
mod http;
mod outputs;
mod registry;
