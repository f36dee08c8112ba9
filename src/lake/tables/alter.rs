//! Schema and property changes by hand: add a column, rename a column, set a property. Each is
//! one new metadata file; data files are untouched and old snapshots keep their schema.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::TableUpdate;

use super::{set_schema, TableError, Tables};

#[derive(Debug, Clone)]
pub enum Alteration {
    AddColumn { name: String, type_name: String },
    RenameColumn { from: String, to: String },
    SetProperty { key: String, value: String },
}

/// An Iceberg primitive type by name: `string`, `long`, `int`, `double`, `float`, `boolean`,
/// `date`, `timestamp`, `timestamptz`, `binary`.
pub fn primitive_type(name: &str) -> Result<Type, TableError> {
    let primitive = match name.to_ascii_lowercase().as_str() {
        "string" => PrimitiveType::String,
        "long" | "bigint" => PrimitiveType::Long,
        "int" | "integer" => PrimitiveType::Int,
        "double" => PrimitiveType::Double,
        "float" => PrimitiveType::Float,
        "boolean" | "bool" => PrimitiveType::Boolean,
        "date" => PrimitiveType::Date,
        "timestamp" => PrimitiveType::Timestamp,
        "timestamptz" => PrimitiveType::Timestamptz,
        "binary" => PrimitiveType::Binary,
        other => {
            return Err(TableError::Invalid(format!(
                "unknown column type `{other}` (string, long, int, double, float, boolean, date, \
                 timestamp, timestamptz, binary)"
            )))
        }
    };
    Ok(Type::Primitive(primitive))
}

impl Tables {
    pub async fn alter(&self, name: &str, alteration: &Alteration) -> Result<(), TableError> {
        let table = self.load(name).await?;
        let metadata = table.metadata();
        let schema = metadata.current_schema().as_ref().clone();
        let missing =
            |column: &str| TableError::Invalid(format!("table {name} has no column `{column}`"));
        match alteration {
            Alteration::AddColumn { name: column, type_name } => {
                if schema.field_by_name(column).is_some() {
                    return Err(TableError::Invalid(format!(
                        "table {name} already has a column `{column}`"
                    )));
                }
                let field = NestedField::optional(
                    metadata.last_column_id() + 1,
                    column,
                    primitive_type(type_name)?,
                );
                let next: Schema = schema.into_builder().with_fields([Arc::new(field)]).build()?;
                self.publish(&table, set_schema(next)).await
            }
            Alteration::RenameColumn { from, to } => {
                if schema.field_by_name(from).is_none() {
                    return Err(missing(from));
                }
                if schema.field_by_name(to).is_some() {
                    return Err(TableError::Invalid(format!(
                        "table {name} already has a column `{to}`"
                    )));
                }
                let fields = schema.as_struct().fields().iter().map(|f| {
                    if &f.name == from {
                        let mut renamed = f.as_ref().clone();
                        renamed.name = to.clone();
                        Arc::new(renamed)
                    } else {
                        f.clone()
                    }
                });
                let next = Schema::builder()
                    .with_schema_id(schema.schema_id())
                    .with_fields(fields)
                    .with_identifier_field_ids(schema.identifier_field_ids())
                    .build()?;
                self.publish(&table, set_schema(next)).await
            }
            Alteration::SetProperty { key, value } => {
                let updates = HashMap::from([(key.clone(), value.clone())]);
                self.publish(&table, vec![TableUpdate::SetProperties { updates }]).await
            }
        }
    }
}
