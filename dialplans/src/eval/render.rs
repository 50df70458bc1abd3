//! Turning an action into the [`Command`] the call actor carries out, values interpolated.

use super::Session;
use crate::command::{Command, DialTarget, Gather, Media, Prompt, RecordSessionOp, Speech};
use crate::model::{Action, MediaT, PromptT, RecordSessionT, TargetT};
use crate::route::Source;
use crate::survey::CsatSurvey;

impl Session {
    fn media(&self, m: &MediaT) -> Media {
        match m {
            MediaT::File(t) => Media::File(self.render(t)),
            MediaT::Url(t) => Media::Url(self.render(t)),
        }
    }

    fn prompt(&self, p: &PromptT) -> Prompt {
        match p {
            PromptT::Play(m) => Prompt::Play(self.media(m)),
            PromptT::Say(t, v) => Prompt::Say {
                text: self.render(t),
                voice: self.render_opt(v),
            },
        }
    }

    /// The command for an action that the actor carries out.
    pub(super) fn command(&self, action: &Action) -> Command {
        match action {
            Action::Answer => Command::Answer,
            Action::Echo => Command::Echo,
            Action::Hangup {
                code,
                cause,
                reason,
            } => Command::Hangup {
                code: *code,
                cause: self.render_opt(cause),
                reason: self.render_opt(reason),
            },
            Action::Play { media, loops } => Command::Play {
                media: self.media(media),
                loops: *loops,
            },
            Action::Say { text, voice } => Command::Say {
                text: self.render(text),
                voice: self.render_opt(voice),
            },
            Action::Gather {
                prompt,
                min,
                max,
                timeout,
                terminator,
                speech,
            } => Command::Gather(Gather {
                prompt: prompt.as_ref().map(|p| self.prompt(p)),
                min_digits: *min,
                max_digits: *max,
                timeout_secs: *timeout,
                terminator: *terminator,
                speech: speech.as_ref().map(|(grammar, language)| Speech {
                    grammar: grammar.clone(),
                    language: self.render_opt(language),
                }),
            }),
            Action::Record {
                to,
                max_secs,
                beep,
                terminator,
            } => Command::Record {
                to: self.render(to),
                max_secs: *max_secs,
                beep: *beep,
                terminator: *terminator,
            },
            Action::Dial {
                targets,
                strategy,
                timeout,
                caller_id,
                ..
            } => Command::Dial {
                targets: targets
                    .iter()
                    .map(|t| match t {
                        TargetT::User(u) => DialTarget::User(self.render(u)),
                        TargetT::Trunk(t, n) => DialTarget::Trunk {
                            trunk: self.render(t),
                            number: self.render(n),
                        },
                        TargetT::Route(t, n) => DialTarget::Route {
                            table: self.render(t),
                            number: self.render(n),
                        },
                        TargetT::Uri(u) => DialTarget::Uri(self.render(u)),
                    })
                    .collect(),
                strategy: *strategy,
                timeout_secs: *timeout,
                caller_id: self.render_opt(caller_id),
            },
            Action::Queue {
                name,
                priority,
                attributes,
                callback_digit,
            } => Command::Queue {
                name: self.render(name),
                priority: *priority,
                attributes: attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), self.render(v)))
                    .collect(),
                callback_digit: *callback_digit,
            },
            Action::Monitor { agent, mode } => Command::Monitor {
                agent: self.render(agent),
                mode: *mode,
            },
            Action::Csat {
                prompt,
                invalid,
                no_input,
                thanks,
                timeout,
                tries,
            } => {
                let d = CsatSurvey::default();
                let p = |t: &Option<PromptT>, default: Prompt| {
                    t.as_ref().map_or(default, |t| self.prompt(t))
                };
                Command::Csat(CsatSurvey {
                    prompt: p(prompt, d.prompt),
                    invalid: p(invalid, d.invalid),
                    no_input: p(no_input, d.no_input),
                    thanks: match thanks {
                        None => d.thanks,
                        Some(t) => t.as_ref().map(|t| self.prompt(t)),
                    },
                    timeout_secs: *timeout,
                    tries: *tries,
                })
            }
            Action::Transfer { to, attended } => Command::Transfer {
                to: self.render(to),
                attended: *attended,
            },
            Action::RecordSession(op) => Command::RecordSession(match op {
                RecordSessionT::Start(to) => RecordSessionOp::Start {
                    to: self.recording_path(to),
                },
                RecordSessionT::Stop => RecordSessionOp::Stop,
                RecordSessionT::Pause => RecordSessionOp::Pause,
                RecordSessionT::Resume => RecordSessionOp::Resume,
            }),
            Action::Webhook { url, method, .. } => Command::Webhook {
                url: self.render(url),
                method: *method,
                body: self.webhook_body(),
            },
            // Instant actions never reach here: `run` handles them. Ending the call is the
            // safe answer should that ever change.
            Action::Set(_)
            | Action::Branch { .. }
            | Action::Goto { .. }
            | Action::BusinessHours { .. }
            | Action::Label => Command::Hangup {
                code: Some(500),
                cause: Some("dialplan_error".into()),
                reason: None,
            },
        }
    }

    fn webhook_body(&self) -> serde_json::Value {
        let source = match &self.facts.source {
            Source::Trunk(t) => serde_json::json!({ "trunk": t }),
            Source::User { name, groups } => serde_json::json!({ "user": name, "groups": groups }),
            Source::Unknown => serde_json::Value::Null,
        };
        let headers: serde_json::Map<String, serde_json::Value> = self
            .facts
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "called": self.facts.called,
            "calling": self.facts.calling,
            "source": source,
            "headers": headers,
            "context": self.vars.get("context"),
            "vars": self.vars,
        })
    }
}
