package main

import "github.com/labstack/echo/v4"

func (s *server) pageRoutes(e *echo.Echo) {}

func (s *server) renderErrorPage(c echo.Context, status int, msg string) error {
	return c.String(status, msg)
}
