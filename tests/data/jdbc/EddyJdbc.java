// What a JDBC tool (DBeaver, DataGrip, any JDBC application) does against
// `eddy server --pg`, with the Postgres JDBC driver: tests/postgres_e2e.rs runs
// it as `java -cp postgresql.jar EddyJdbc.java HOST:PORT QUERY PREPARED VALUE`
// and compares what it prints with what it created and with gRPC's answers.
//
// It prints sections, one line per row, fields separated by `|`:
//   tables    getTables(null, "public", "%", null): schema|name|type
//   columns   getColumns(null, "public", "%", "%"): table|column|java.sql.Types|type name|nullable|position
//   schemas   getSchemas(): schema
//   keys      getPrimaryKeys(null, "public", each table): table|column (Eddy has none)
//   types     getTypeInfo(): type name|java.sql.Types, for the types Eddy sends
//   prepared  PREPARED (one `?`) bound to VALUE as a long: its rows, comma-separated
//   rows      QUERY: a header of name:type name, then its rows, comma-separated
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

public class EddyJdbc {
  public static void main(String[] args) throws Exception {
    String url = "jdbc:postgresql://" + args[0] + "/eddy?user=eddy&sslmode=disable";
    try (Connection conn = DriverManager.getConnection(url)) {
      DatabaseMetaData meta = conn.getMetaData();
      System.out.println("tables");
      try (ResultSet rs = meta.getTables(null, "public", "%", null)) {
        while (rs.next()) {
          System.out.println(rs.getString("TABLE_SCHEM") + "|" + rs.getString("TABLE_NAME") + "|" + rs.getString("TABLE_TYPE"));
        }
      }
      System.out.println("columns");
      try (ResultSet rs = meta.getColumns(null, "public", "%", "%")) {
        while (rs.next()) {
          System.out.println(rs.getString("TABLE_NAME") + "|" + rs.getString("COLUMN_NAME") + "|" + rs.getInt("DATA_TYPE") + "|"
              + rs.getString("TYPE_NAME") + "|" + rs.getString("IS_NULLABLE") + "|" + rs.getInt("ORDINAL_POSITION"));
        }
      }
      System.out.println("schemas");
      try (ResultSet rs = meta.getSchemas()) {
        while (rs.next()) {
          System.out.println(rs.getString("TABLE_SCHEM"));
        }
      }
      System.out.println("keys");
      for (String table : new String[] {"bids", "counts", "dear"}) {
        try (ResultSet rs = meta.getPrimaryKeys(null, "public", table)) {
          while (rs.next()) {
            System.out.println(rs.getString("TABLE_NAME") + "|" + rs.getString("COLUMN_NAME"));
          }
        }
      }
      System.out.println("types");
      List<String> sent = List.of("int8", "int4", "int2", "float8", "float4", "numeric", "bool", "text", "bytea", "date", "timestamp", "timestamptz");
      try (ResultSet rs = meta.getTypeInfo()) {
        while (rs.next()) {
          if (sent.contains(rs.getString("TYPE_NAME"))) {
            System.out.println(rs.getString("TYPE_NAME") + "|" + rs.getInt("DATA_TYPE"));
          }
        }
      }
      System.out.println("prepared");
      try (PreparedStatement statement = conn.prepareStatement(args[2])) {
        statement.setLong(1, Long.parseLong(args[3]));
        try (ResultSet rs = statement.executeQuery()) {
          printRows(rs, false);
        }
      }
      System.out.println("rows");
      try (Statement statement = conn.createStatement(); ResultSet rs = statement.executeQuery(args[1])) {
        printRows(rs, true);
      }
    }
  }

  static void printRows(ResultSet rs, boolean header) throws SQLException {
    ResultSetMetaData meta = rs.getMetaData();
    int n = meta.getColumnCount();
    if (header) {
      List<String> names = new ArrayList<>();
      for (int i = 1; i <= n; i++) {
        names.add(meta.getColumnName(i) + ":" + meta.getColumnTypeName(i));
      }
      System.out.println(String.join(",", names));
    }
    while (rs.next()) {
      List<String> values = new ArrayList<>();
      for (int i = 1; i <= n; i++) {
        values.add(show(rs, i, meta.getColumnType(i), meta.getColumnTypeName(i)));
      }
      System.out.println(String.join(",", values));
    }
  }

  /** The value as the typed getter a JDBC tool uses for its column type reads it. */
  static String show(ResultSet rs, int i, int type, String typeName) throws SQLException {
    String value = switch (type) {
      case Types.BIGINT -> String.valueOf(rs.getLong(i));
      case Types.INTEGER -> String.valueOf(rs.getInt(i));
      case Types.SMALLINT -> String.valueOf(rs.getShort(i));
      case Types.DOUBLE -> String.valueOf(rs.getDouble(i));
      case Types.REAL -> String.valueOf(rs.getFloat(i));
      case Types.NUMERIC -> {
        BigDecimal d = rs.getBigDecimal(i);
        yield d == null ? null : d.toPlainString();
      }
      case Types.BIT, Types.BOOLEAN -> String.valueOf(rs.getBoolean(i));
      case Types.BINARY -> {
        byte[] bytes = rs.getBytes(i);
        yield bytes == null ? null : HexFormat.of().formatHex(bytes);
      }
      case Types.DATE -> String.valueOf(rs.getObject(i, LocalDate.class));
      case Types.TIMESTAMP -> {
        if (typeName.equals("timestamptz")) {
          OffsetDateTime t = rs.getObject(i, OffsetDateTime.class);
          yield t == null ? null : DateTimeFormatter.ISO_OFFSET_DATE_TIME.format(t);
        }
        LocalDateTime t = rs.getObject(i, LocalDateTime.class);
        yield t == null ? null : DateTimeFormatter.ISO_LOCAL_DATE_TIME.format(t);
      }
      default -> rs.getString(i);
    };
    return rs.wasNull() ? "" : value;
  }
}
