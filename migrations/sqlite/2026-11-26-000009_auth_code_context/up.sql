-- The rest of an EHR launch's context (intent, need_patient_banner, smart_style_url), as JSON,
-- carried from the code to the token response.
ALTER TABLE auth_codes ADD COLUMN context TEXT;
