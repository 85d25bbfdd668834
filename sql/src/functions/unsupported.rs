//! Flink's built-in functions that Eddy does not have yet. A query calling one
//! is refused naming the function as Flink's, instead of with DataFusion's
//! "Invalid function" and a guess at an unrelated DataFusion function.

use crate::error::SqlError;

/// Flink 2.x built-in functions (lower case), from its documentation's lists.
/// Only consulted when DataFusion found no function of the name, so the ones
/// Eddy has can stay listed.
const FLINK_FUNCTIONS: &[&str] = &[
    // comparison, logical, conditional
    "coalesce",
    "if",
    "ifnull",
    "is_alpha",
    "is_decimal",
    "is_digit",
    "nullif",
    "greatest",
    "least",
    // arithmetic
    "abs",
    "acos",
    "asin",
    "atan",
    "atan2",
    "bin",
    "ceil",
    "ceiling",
    "cos",
    "cosh",
    "cot",
    "degrees",
    "e",
    "exp",
    "floor",
    "hex",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "power",
    "radians",
    "rand",
    "rand_integer",
    "round",
    "sign",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "truncate",
    "unhex",
    "uuid",
    // string
    "ascii",
    "btrim",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "decode",
    "elt",
    "encode",
    "endswith",
    "from_base64",
    "initcap",
    "instr",
    "left",
    "locate",
    "lower",
    "lpad",
    "ltrim",
    "overlay",
    "parse_url",
    "position",
    "printf",
    "regexp",
    "regexp_count",
    "regexp_extract",
    "regexp_extract_all",
    "regexp_instr",
    "regexp_replace",
    "regexp_substr",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split",
    "split_index",
    "startswith",
    "str_to_map",
    "substr",
    "substring",
    "to_base64",
    "translate",
    "trim",
    "upper",
    "url_decode",
    "url_encode",
    // temporal
    "convert_tz",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_watermark",
    "date_format",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "from_unixtime",
    "hour",
    "localtime",
    "localtimestamp",
    "minute",
    "month",
    "now",
    "quarter",
    "second",
    "timestampadd",
    "timestampdiff",
    "to_date",
    "to_timestamp",
    "to_timestamp_ltz",
    "unix_timestamp",
    "week",
    "year",
    "date_add",
    "date_sub",
    "datediff",
    // conversion, hashing
    "try_cast",
    "typeof",
    "md5",
    "sha1",
    "sha2",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    // JSON
    "json_array",
    "json_exists",
    "json_object",
    "json_query",
    "json_quote",
    "json_string",
    "json_unquote",
    "json_value",
    "is_json",
    // collections
    "array",
    "array_append",
    "array_concat",
    "array_contains",
    "array_distinct",
    "array_except",
    "array_intersect",
    "array_join",
    "array_max",
    "array_min",
    "array_position",
    "array_prepend",
    "array_remove",
    "array_reverse",
    "array_slice",
    "array_sort",
    "array_union",
    "cardinality",
    "element",
    "map",
    "map_entries",
    "map_from_arrays",
    "map_keys",
    "map_union",
    "map_values",
    "split",
    // aggregates
    "array_agg",
    "avg",
    "count",
    "cume_dist",
    "dense_rank",
    "first_value",
    "lag",
    "last_value",
    "lead",
    "listagg",
    "max",
    "min",
    "ntile",
    "percent_rank",
    "rank",
    "row_number",
    "stddev_pop",
    "stddev_samp",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
];

/// Rewrites DataFusion's "Invalid function 'name'" for a function Flink has into
/// a refusal naming it as Flink's; any other error is returned unchanged.
pub fn refuse_unsupported(error: SqlError) -> SqlError {
    let SqlError::Plan { location, message, .. } = &error else { return error };
    let Some(rest) = message.split("Invalid function '").nth(1) else { return error };
    let name: String = rest.chars().take_while(|c| *c != '\'').collect();
    if !FLINK_FUNCTIONS.contains(&name.as_str()) {
        return error;
    }
    SqlError::plan(*location, format!("`{}` is a Flink built-in function that Eddy does not support yet", name.to_uppercase()))
        .with_hint("docs/SQL.md (Functions) lists the functions Eddy has and where they differ from Flink's")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    #[test]
    fn a_flink_function_is_named_and_others_keep_datafusions_message() {
        let at = Location { line: 1, column: 8 };
        let refused = refuse_unsupported(SqlError::plan(at, "Invalid function 'json_value'.\nDid you mean 'to_hex'?"));
        assert!(refused.to_string().contains("`JSON_VALUE` is a Flink built-in function that Eddy does not support yet"), "{refused}");
        assert!(!refused.to_string().contains("to_hex"));
        let unknown = refuse_unsupported(SqlError::plan(at, "Invalid function 'nosuch'.\nDid you mean 'nanvl'?"));
        assert!(unknown.to_string().contains("Invalid function 'nosuch'"));
    }
}
