//! Enums whose variants each have one name, used the same way for
//! arguments, reports and printing: `named_enum!` writes the enum, its
//! `ALL` list, `name()`, `Display`, `FromStr` (failing with
//! [`UnknownName`]) and `Serialize` (as the name).

#[doc(hidden)]
pub use serde;

/// A name that is none of an enum's: what was given and what would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?} (expected one of: {})", .expected.join(", "))]
pub struct UnknownName {
    /// What the enum names ("hook", "base", ...).
    pub what: &'static str,
    pub given: String,
    pub expected: Vec<&'static str>,
}

impl UnknownName {
    pub fn new(
        what: &'static str,
        given: &str,
        expected: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        UnknownName {
            what,
            given: given.to_string(),
            expected: expected.into_iter().collect(),
        }
    }
}

/// `named_enum!(#[derive(...)] pub enum E: "what" { A => "a", B = 3 => "b" })`:
/// the enum (its attributes and the variants' as written, explicit
/// discriminants allowed; it must be `Copy`), `E::ALL` in the order
/// written, `name()`, `Display`, `FromStr` and `Serialize`.
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$m:meta])*
        $vis:vis enum $name:ident : $what:literal {
            $($(#[$vm:meta])* $v:ident $(= $d:expr)? => $s:literal),+ $(,)?
        }
    ) => {
        $(#[$m])*
        $vis enum $name {
            $($(#[$vm])* $v $(= $d)?),+
        }

        impl $name {
            /// Every variant, in the order they are declared.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The one name used in arguments, reports and output.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownName;

            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::UnknownName> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| $crate::UnknownName::new($what, s, $name::ALL.iter().map(|v| v.name())))
            }
        }

        impl $crate::serde::Serialize for $name {
            fn serialize<S: $crate::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    named_enum!(
        /// A test enum.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Colour: "colour" {
            Red = 3 => "red",
            /// Documented.
            DarkBlue => "dark-blue",
        }
    );

    #[test]
    fn names_round_trip_in_order() {
        assert_eq!(Colour::ALL, &[Colour::Red, Colour::DarkBlue]);
        for c in Colour::ALL {
            assert_eq!(c.to_string().parse::<Colour>(), Ok(*c));
        }
        assert_eq!(Colour::Red as i32, 3);
    }

    #[test]
    fn an_unknown_name_says_what_would_do() {
        let e = "green"
            .parse::<Colour>()
            .expect_err("green is not a colour");
        assert_eq!(
            e.to_string(),
            "unknown colour \"green\" (expected one of: red, dark-blue)"
        );
    }
}
