//! What a valid config trades away, for `check-config`: settings that
//! weaken what the client can tell about its peer.

use authtoken_core::kinds::{ChannelBindingPolicy, EmptyChallengePolicy};

use crate::raw::default_min_scram_iterations;
use crate::{Backend, Config};

impl Config {
    /// Settings that weaken what the client can tell about its peer, for
    /// `check-config`: (refused, text). A refused one lets a peer that is not
    /// the authority sign users in.
    pub fn weaknesses(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        if self.backend == Backend::Rest {
            out.push((
                false,
                "backend rest: the password itself is sent to the authority (over verified \
                 https only), which sees it in clear; mdm's SCRAM and hem never send it"
                    .to_owned(),
            ));
        }
        if self.allow_insecure_http {
            out.push((
                true,
                "allow_insecure_http = true: whoever answers on a plain-http address can pose \
                 as the authority (and with hem or a Digest scheme, sign anyone in)"
                    .to_owned(),
            ));
        }
        if self.min_scram_iterations < default_min_scram_iterations() {
            out.push((
                false,
                format!(
                    "min_scram_iterations = {}: a fake server may ask for a proof that is \
                     cheap to crack offline (default {})",
                    self.min_scram_iterations,
                    default_min_scram_iterations()
                ),
            ));
        }
        if !self.require_server_signature {
            out.push((
                false,
                "require_server_signature = false: a SCRAM peer need not prove it holds the \
                 user's verifier"
                    .to_owned(),
            ));
        }
        if self.channel_binding == ChannelBindingPolicy::Off {
            out.push((
                false,
                "channel_binding = \"off\": a relay whose certificate this machine trusts \
                 (an intercepting proxy, a mis-issued certificate) can pass a login through \
                 and keep the token"
                    .to_owned(),
            ));
        }
        for scheme in self.schemes.iter().filter(|s| s.is_digest()) {
            out.push((
                false,
                format!(
                    "schemes includes {}: the authority stores a password-equivalent hash and \
                     proves nothing about itself",
                    scheme.name()
                ),
            ));
        }
        if self.empty_challenge == EmptyChallengePolicy::Success {
            out.push((
                false,
                "empty_challenge = \"success\": the authority can sign users in without any \
                 password (only over verified https)"
                    .to_owned(),
            ));
        }
        out
    }
}
