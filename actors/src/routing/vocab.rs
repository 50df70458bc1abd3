//! Interned skill and language names, so agents and compiled expressions use small integers.

use std::collections::HashMap;

/// A skill, interned by [`Vocabulary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SkillId(pub u16);

/// A language, interned by [`Vocabulary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LangId(pub u16);

/// The names the router knows. Names are interned on first use and never forgotten.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    skills: HashMap<String, SkillId>,
    skill_names: Vec<String>,
    langs: HashMap<String, LangId>,
    lang_names: Vec<String>,
}

impl Vocabulary {
    /// The skill called `name`, interning it if new.
    pub fn skill(&mut self, name: &str) -> SkillId {
        if let Some(&id) = self.skills.get(name) {
            return id;
        }
        let id = SkillId(self.skill_names.len() as u16);
        self.skills.insert(name.to_owned(), id);
        self.skill_names.push(name.to_owned());
        id
    }

    /// The language called `name` (case-insensitive), interning it if new.
    pub fn lang(&mut self, name: &str) -> LangId {
        let name = name.to_ascii_lowercase();
        if let Some(&id) = self.langs.get(&name) {
            return id;
        }
        let id = LangId(self.lang_names.len() as u16);
        self.langs.insert(name.clone(), id);
        self.lang_names.push(name);
        id
    }

    /// The language called `name`, if known (no interning: used while evaluating).
    pub fn find_lang(&self, name: &str) -> Option<LangId> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.langs.get(&name.to_ascii_lowercase()).copied()
        } else {
            self.langs.get(name).copied()
        }
    }

    /// The skill called `name`, if known.
    pub fn find_skill(&self, name: &str) -> Option<SkillId> {
        self.skills.get(name).copied()
    }

    /// The name of a skill.
    pub fn skill_name(&self, id: SkillId) -> &str {
        self.skill_names
            .get(id.0 as usize)
            .map_or("?", |s| s.as_str())
    }

    /// The name of a language.
    pub fn lang_name(&self, id: LangId) -> &str {
        self.lang_names
            .get(id.0 as usize)
            .map_or("?", |s| s.as_str())
    }

    /// How many skills are known.
    pub fn skill_count(&self) -> usize {
        self.skill_names.len()
    }
}
