//! syslog listener (being built).
