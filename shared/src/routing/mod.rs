//! Lead routing: profile merge, qualification rules, fan-out messages, and the ports the router uses.

pub mod fanout;
pub mod fields;
pub mod memory;
pub mod ports;
pub mod profile;
pub mod rules;

pub use fanout::{ActionHeader, AudienceAction, EmailAction, FanOut};
pub use ports::{Claim, EffectLedger, EffectOutcome, ProfileStore, Saved, Versioned};
pub use profile::{CrmRecord, Merge, Profile, RoutingView, Submission};
pub use rules::{Decision, RuleSet};
