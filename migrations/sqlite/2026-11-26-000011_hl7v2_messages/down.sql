DROP TABLE hl7v2_messages;
