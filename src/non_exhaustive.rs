//! The marker that keeps the crate's create-info structs open to new fields.

/// A field that keeps a public struct open to new fields: it cannot be named or built outside
/// this crate, so a struct literal of a create info must end in `..Default::default()`, and
/// adding a field later breaks no one.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NonExhaustive(pub(crate) ());
