//! The todo list kept in a session: model, validation and the edits the API offers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// The session attribute holding the JSON array of todos.
pub const ATTRIBUTE: &str = "todos";
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Most todos one session may hold; keeps a session far below the service's size limit.
pub const MAX_TODOS: usize = 100;

/// One todo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Todo {
    /// Server-assigned identifier (16 hex digits).
    #[schema(pattern = "^[0-9a-f]{16}$", example = "4f1c2a9e0b7d3e65")]
    pub id: String,
    /// What to do.
    #[schema(min_length = 1, max_length = 200, example = "Hello World")]
    pub title: String,
    /// Details.
    #[schema(max_length = 2000, example = "This is session test")]
    pub description: String,
    /// Whether it is done.
    pub done: bool,
}

/// A todo to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTodo {
    /// What to do, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, example = "Buy milk")]
    pub title: String,
    /// Details, up to 2000 characters.
    #[schema(max_length = 2000, example = "Two litres")]
    pub description: String,
}

/// An edit; an empty object toggles `done`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TodoPatch {
    /// New title, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    /// New description, up to 2000 characters.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// New state.
    pub done: Option<bool>,
}

/// The list a new session starts with: the demo of the Spring application the product comes from.
pub fn seed() -> Vec<Todo> {
    vec![Todo {
        id: SEED_ID.into(),
        title: "Hello World".into(),
        description: "This is session test".into(),
        done: false,
    }]
}

/// Reads the stored list; `None` when the bytes are not a todo list (written by someone else).
pub fn decode(bytes: &[u8]) -> Option<Vec<Todo>> {
    serde_json::from_slice(bytes).ok()
}

/// The stored form of a list.
pub fn encode(todos: &[Todo]) -> Vec<u8> {
    serde_json::to_vec(todos).expect("todos always serialise")
}

/// Appends `new`, returning the stored todo.
pub fn add(todos: &mut Vec<Todo>, new: &NewTodo) -> Result<Todo, ApiError> {
    check_title(&new.title)?;
    check_description(&new.description)?;
    if todos.len() >= MAX_TODOS {
        return Err(ApiError::Unprocessable(format!(
            "a session holds at most {MAX_TODOS} todos; delete one first"
        )));
    }
    let todo = Todo {
        id: new_id(),
        title: new.title.clone(),
        description: new.description.clone(),
        done: false,
    };
    todos.push(todo.clone());
    Ok(todo)
}

/// Applies `patch` to the todo `id`, returning it as stored.
pub fn edit(todos: &mut [Todo], id: &str, patch: &TodoPatch) -> Result<Todo, ApiError> {
    if let Some(title) = &patch.title {
        check_title(title)?;
    }
    if let Some(description) = &patch.description {
        check_description(description)?;
    }
    let todo = todos
        .iter_mut()
        .find(|t| t.id == id)
        .ok_or_else(|| not_found(id))?;
    if patch.title.is_none() && patch.description.is_none() && patch.done.is_none() {
        todo.done = !todo.done;
    }
    if let Some(title) = &patch.title {
        todo.title.clone_from(title);
    }
    if let Some(description) = &patch.description {
        todo.description.clone_from(description);
    }
    if let Some(done) = patch.done {
        todo.done = done;
    }
    Ok(todo.clone())
}

/// Removes the todo `id`.
pub fn remove(todos: &mut Vec<Todo>, id: &str) -> Result<(), ApiError> {
    let at = todos
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| not_found(id))?;
    todos.remove(at);
    Ok(())
}

fn not_found(id: &str) -> ApiError {
    // The id comes from the URL: echo it only when it has the shape we issue.
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        ApiError::NotFound(format!("no todo with id {id} in this session"))
    } else {
        ApiError::NotFound("no such todo in this session".into())
    }
}

fn check_title(title: &str) -> Result<(), ApiError> {
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "title must be 1 to {MAX_TITLE_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), ApiError> {
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

/// The seeded todo's id: the same in every session, so a browser that saw the seed before its
/// session existed (a GET stores nothing) can change it with the first request that does.
pub const SEED_ID: &str = "5eed000000000000";

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(title: &str) -> NewTodo {
        NewTodo {
            title: title.into(),
            description: String::new(),
        }
    }

    #[test]
    fn empty_patch_toggles_and_fields_edit() {
        let mut todos = seed();
        let id = todos[0].id.clone();
        assert!(edit(&mut todos, &id, &TodoPatch::default()).unwrap().done);
        assert!(!edit(&mut todos, &id, &TodoPatch::default()).unwrap().done);
        let patch = TodoPatch {
            title: Some("Renamed".into()),
            ..TodoPatch::default()
        };
        let edited = edit(&mut todos, &id, &patch).unwrap();
        assert_eq!((edited.title.as_str(), edited.done), ("Renamed", false));
    }

    #[test]
    fn limits_are_enforced_and_named() {
        let mut todos = Vec::new();
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        let err = add(&mut todos, &new(&long)).unwrap_err();
        assert!(err.to_string().contains("title must be 1 to 200"), "{err}");
        assert!(add(&mut todos, &new("")).is_err());
        for i in 0..MAX_TODOS {
            add(&mut todos, &new(&format!("t{i}"))).unwrap();
        }
        let err = add(&mut todos, &new("one too many")).unwrap_err();
        assert!(err.to_string().contains("at most 100 todos"), "{err}");
    }

    #[test]
    fn unknown_ids_are_not_found_and_the_list_round_trips() {
        let mut todos = seed();
        assert!(matches!(
            remove(&mut todos, "../etc"),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(decode(&encode(&todos)), Some(todos.clone()));
        assert_eq!(decode(b"not json"), None);
        let id = todos[0].id.clone();
        remove(&mut todos, &id).unwrap();
        assert!(todos.is_empty());
    }
}
