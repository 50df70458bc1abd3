//! The post-call satisfaction survey (CSAT), as a pure state machine: ask for a score 1–5,
//! ask again after an invalid digit or silence (up to `tries` questions), thank the caller.
//!
//! The call actor drives it like the evaluator: [`Survey::start`] gives the first command (a
//! one-digit [`Gather`] whose prompt is the question), then every outcome of the command in
//! progress goes to [`Survey::handle`], which answers with the next command or with the
//! survey's [`Outcome`]. A valid score is handed out once by [`Survey::take_score`], as soon as
//! it is known (before the thank-you plays), so the actor stores it even if the caller hangs
//! up during the thanks. No I/O, no clock: the timeouts are the gather's.

use crate::command::{Command, Gather, Prompt};
use crate::eval::Event;

/// Default question.
pub const DEFAULT_QUESTION: &str =
    "Please rate the service you received today. Press a number from 1, very unsatisfied, to 5, very satisfied.";
/// Default re-prompt after an invalid digit.
pub const DEFAULT_INVALID: &str =
    "Sorry, that is not a valid answer. Please press a number from 1 to 5.";
/// Default re-prompt after silence.
pub const DEFAULT_NO_INPUT: &str =
    "Sorry, we did not get your answer. Please press a number from 1 to 5.";
/// Default thank-you.
pub const DEFAULT_THANKS: &str = "Thank you for your feedback. Goodbye.";

/// What a survey says and how patient it is (the `csat` action with its values interpolated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsatSurvey {
    /// The question.
    pub prompt: Prompt,
    /// Asked again after a digit other than 1–5.
    pub invalid: Prompt,
    /// Asked again after no digit within the timeout.
    pub no_input: Prompt,
    /// Played after a valid score; `None`: nothing.
    pub thanks: Option<Prompt>,
    /// Seconds to wait for the digit after each question.
    pub timeout_secs: u32,
    /// Questions asked at most (the first one included), 1 or more.
    pub tries: u32,
}

fn say(text: &str) -> Prompt {
    Prompt::Say {
        text: text.to_string(),
        voice: None,
    }
}

impl Default for CsatSurvey {
    fn default() -> Self {
        CsatSurvey {
            prompt: say(DEFAULT_QUESTION),
            invalid: say(DEFAULT_INVALID),
            no_input: say(DEFAULT_NO_INPUT),
            thanks: Some(say(DEFAULT_THANKS)),
            timeout_secs: 5,
            tries: 3,
        }
    }
}

/// How a survey ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The caller gave this score (1–5).
    Scored(u8),
    /// The last answer was a digit other than 1–5.
    Invalid,
    /// The last question got no digit.
    NoInput,
}

impl Outcome {
    /// The `csat_status` variable's value: `scored`, `invalid` or `no_input`.
    pub fn status(self) -> &'static str {
        match self {
            Outcome::Scored(_) => "scored",
            Outcome::Invalid => "invalid",
            Outcome::NoInput => "no_input",
        }
    }

    /// The score, when one was given.
    pub fn score(self) -> Option<u8> {
        match self {
            Outcome::Scored(s) => Some(s),
            _ => None,
        }
    }
}

/// What to do after an event.
#[derive(Clone, Debug, PartialEq)]
pub enum SurveyStep {
    /// Carry out this command and report its outcome to [`Survey::handle`].
    Execute(Command),
    /// The survey is over.
    Done(Outcome),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Asking,
    Thanking(u8),
    Over(Outcome),
}

/// One running survey.
#[derive(Clone, Debug)]
pub struct Survey {
    spec: CsatSurvey,
    asked: u32,
    phase: Phase,
    score: Option<u8>,
}

impl Survey {
    /// A survey and its first command (the question, gathering one digit).
    pub fn start(spec: CsatSurvey) -> (Survey, Command) {
        let first = spec.prompt.clone();
        let mut s = Survey {
            spec,
            asked: 0,
            phase: Phase::Asking,
            score: None,
        };
        let cmd = s.ask(first);
        (s, cmd)
    }

    fn ask(&mut self, prompt: Prompt) -> Command {
        self.asked += 1;
        Command::Gather(Gather {
            prompt: Some(prompt),
            min_digits: 1,
            max_digits: 1,
            timeout_secs: self.spec.timeout_secs.max(1),
            terminator: None,
            speech: None,
        })
    }

    /// Feeds the outcome of the command in progress. Events that do not belong to the phase
    /// (a stray `DialAnswered`…) count as the end of the command, so the survey always moves on.
    pub fn handle(&mut self, event: &Event) -> SurveyStep {
        match self.phase {
            Phase::Asking => {
                let fault = match event {
                    Event::DigitsGathered { digits } => match score_of(digits) {
                        Some(n) => return self.scored(n),
                        None if digits.trim().is_empty() => Outcome::NoInput,
                        None => Outcome::Invalid,
                    },
                    _ => Outcome::NoInput,
                };
                if self.asked >= self.spec.tries.max(1) {
                    self.phase = Phase::Over(fault);
                    return SurveyStep::Done(fault);
                }
                let again = match fault {
                    Outcome::Invalid => self.spec.invalid.clone(),
                    _ => self.spec.no_input.clone(),
                };
                SurveyStep::Execute(self.ask(again))
            }
            Phase::Thanking(n) => {
                let o = Outcome::Scored(n);
                self.phase = Phase::Over(o);
                SurveyStep::Done(o)
            }
            Phase::Over(o) => SurveyStep::Done(o),
        }
    }

    fn scored(&mut self, n: u8) -> SurveyStep {
        self.score = Some(n);
        match self.spec.thanks.clone() {
            Some(Prompt::Play(media)) => {
                self.phase = Phase::Thanking(n);
                SurveyStep::Execute(Command::Play { media, loops: 1 })
            }
            Some(Prompt::Say { text, voice }) => {
                self.phase = Phase::Thanking(n);
                SurveyStep::Execute(Command::Say { text, voice })
            }
            None => {
                let o = Outcome::Scored(n);
                self.phase = Phase::Over(o);
                SurveyStep::Done(o)
            }
        }
    }

    /// The score, once, as soon as the caller gave a valid one.
    pub fn take_score(&mut self) -> Option<u8> {
        self.score.take()
    }

    /// Questions asked so far.
    pub fn asked(&self) -> u32 {
        self.asked
    }
}

/// `1`–`5` (one digit) → the score.
fn score_of(digits: &str) -> Option<u8> {
    match digits.trim() {
        "1" => Some(1),
        "2" => Some(2),
        "3" => Some(3),
        "4" => Some(4),
        "5" => Some(5),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Media;

    fn digits(d: &str) -> Event {
        Event::DigitsGathered { digits: d.into() }
    }

    fn gather_prompt(c: &Command) -> Prompt {
        match c {
            Command::Gather(g) => {
                assert_eq!((g.min_digits, g.max_digits), (1, 1));
                g.prompt.clone().expect("a prompt")
            }
            other => panic!("expected a gather, got {other:?}"),
        }
    }

    #[test]
    fn valid_digit_scores_then_thanks() {
        let (mut s, first) = Survey::start(CsatSurvey::default());
        assert_eq!(gather_prompt(&first), say(DEFAULT_QUESTION));
        match s.handle(&digits("4")) {
            SurveyStep::Execute(Command::Say { text, .. }) => assert_eq!(text, DEFAULT_THANKS),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.take_score(), Some(4));
        assert_eq!(s.take_score(), None, "handed out once");
        assert_eq!(
            s.handle(&Event::ActionCompleted),
            SurveyStep::Done(Outcome::Scored(4))
        );
    }

    #[test]
    fn invalid_then_silence_then_valid() {
        let (mut s, _) = Survey::start(CsatSurvey::default());
        let again = s.handle(&digits("9"));
        let SurveyStep::Execute(c) = again else {
            panic!("{again:?}")
        };
        assert_eq!(gather_prompt(&c), say(DEFAULT_INVALID));
        let again = s.handle(&Event::GatherTimeout);
        let SurveyStep::Execute(c) = again else {
            panic!("{again:?}")
        };
        assert_eq!(gather_prompt(&c), say(DEFAULT_NO_INPUT));
        assert!(matches!(s.handle(&digits("2")), SurveyStep::Execute(_)));
        assert_eq!(s.take_score(), Some(2));
        assert_eq!(s.asked(), 3);
    }

    #[test]
    fn gives_up_after_tries() {
        let spec = CsatSurvey {
            tries: 2,
            ..CsatSurvey::default()
        };
        let (mut s, _) = Survey::start(spec.clone());
        assert!(matches!(s.handle(&digits("*")), SurveyStep::Execute(_)));
        assert_eq!(s.handle(&digits("0")), SurveyStep::Done(Outcome::Invalid));
        assert_eq!(s.take_score(), None);

        let (mut s, _) = Survey::start(spec);
        assert!(matches!(
            s.handle(&Event::ActionCompleted),
            SurveyStep::Execute(_)
        ));
        assert_eq!(
            s.handle(&Event::GatherTimeout),
            SurveyStep::Done(Outcome::NoInput)
        );
        assert_eq!(Outcome::NoInput.status(), "no_input");
    }

    #[test]
    fn without_thanks_ends_at_the_score_and_plays_files() {
        let spec = CsatSurvey {
            thanks: None,
            tries: 0,
            ..CsatSurvey::default()
        };
        let (mut s, _) = Survey::start(spec);
        assert_eq!(s.handle(&digits("5")), SurveyStep::Done(Outcome::Scored(5)));
        assert_eq!(s.take_score(), Some(5));

        let spec = CsatSurvey {
            thanks: Some(Prompt::Play(Media::File("thanks.wav".into()))),
            ..CsatSurvey::default()
        };
        let (mut s, _) = Survey::start(spec);
        assert_eq!(
            s.handle(&digits("1")),
            SurveyStep::Execute(Command::Play {
                media: Media::File("thanks.wav".into()),
                loops: 1
            })
        );
    }
}
